"""Post texts for the demo world, each tagged with a topic and a hidden within-topic sub-theme.

Generated texts are written from sub-theme-specific vocabularies, so the sub-theme shows in the
words of a post but never in its topic label. Real texts (`--posts-csv`) get their sub-themes
from their own words: TF-IDF + NMF within each topic (deliberately not from a sentence-embedding
model, which would hand the embedding arm a rigged win).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from feedlab.storage.validation import ImportValidationError

# topic -> (topic-wide phrases, {sub-theme: phrases})
VOCABULARY: dict[str, tuple[list[str], dict[str, list[str]]]] = {
    "business": (
        ["business", "the economy", "the company", "profits", "the market", "executives"],
        {
            "markets": [
                "the stock index",
                "bond yields",
                "the trading floor",
                "shareholders",
                "the hedge fund",
                "quarterly earnings",
                "the share price",
                "investors",
                "the dividend",
                "market volatility",
                "the interest rate",
                "the IPO",
            ],
            "startups": [
                "the startup founder",
                "venture capital",
                "the seed round",
                "the pitch deck",
                "the incubator",
                "angel investors",
                "the unicorn valuation",
                "the product launch",
                "the co-working space",
                "the growth strategy",
                "the accelerator programme",
                "early customers",
            ],
            "retail": [
                "the shopping mall",
                "online orders",
                "the supermarket chain",
                "holiday sales",
                "the delivery van",
                "consumer spending",
                "the discount season",
                "the checkout queue",
                "the loyalty card",
                "warehouse staff",
                "the price tag",
                "the fashion brand",
            ],
        },
    ),
    "covid": (
        [
            "the pandemic",
            "the coronavirus",
            "covid",
            "health officials",
            "the virus",
            "the outbreak",
        ],
        {
            "vaccines": [
                "the vaccine rollout",
                "the booster shot",
                "the clinical trial",
                "antibodies",
                "the second dose",
                "the pharmacy queue",
                "the mRNA vaccine",
                "immunity",
                "the vaccination centre",
                "side effects",
                "the nurse",
                "the vaccine certificate",
            ],
            "lockdown": [
                "the lockdown",
                "the curfew",
                "remote work",
                "closed schools",
                "face masks",
                "social distancing",
                "empty streets",
                "the home office",
                "the travel ban",
                "the quarantine rules",
                "video calls",
                "the reopening plan",
            ],
            "hospitals": [
                "the intensive care unit",
                "ventilators",
                "the hospital ward",
                "doctors",
                "the oxygen supply",
                "the infection rate",
                "the testing lab",
                "the PCR test",
                "exhausted nurses",
                "the patient",
                "the ambulance",
                "the emergency room",
            ],
        },
    ),
    "entertainment": (
        ["entertainment", "the show", "the audience", "the fans", "the stars", "pop culture"],
        {
            "music": [
                "the new album",
                "the concert tour",
                "the guitarist",
                "the music festival",
                "the chart single",
                "the lead singer",
                "the vinyl record",
                "the music video",
                "the rap verse",
                "the orchestra",
                "the live stage",
                "the band reunion",
            ],
            "celebrities": [
                "the red carpet",
                "the celebrity couple",
                "the paparazzi",
                "the fashion gala",
                "the talk show host",
                "the influencer",
                "the wedding rumours",
                "the gossip column",
                "the award dress",
                "the reality star",
                "the fan club",
                "the magazine cover",
            ],
            "gaming": [
                "the video game",
                "the game console",
                "the esports team",
                "the boss fight",
                "the open world",
                "the multiplayer mode",
                "the streamer",
                "the game studio",
                "the controller",
                "the speedrun",
                "the patch notes",
                "the loot box",
            ],
        },
    ),
    "movie": (
        [
            "the film",
            "the director",
            "the cinema",
            "the box office",
            "the screenplay",
            "the actors",
        ],
        {
            "horror": [
                "the haunted house",
                "the ghost",
                "the slasher",
                "the jump scare",
                "the cursed doll",
                "the zombie horde",
                "the dark basement",
                "the possessed child",
                "the vampire",
                "the creepy forest",
                "the scream",
                "the midnight ritual",
            ],
            "comedy": [
                "the romantic comedy",
                "the stand-up comedian",
                "the awkward wedding",
                "the slapstick chase",
                "the witty dialogue",
                "the sitcom family",
                "the prank",
                "the road trip",
                "the funny sidekick",
                "the laughter",
                "the mistaken identity",
                "the parody",
            ],
            "scifi": [
                "the spaceship",
                "the alien planet",
                "the time machine",
                "the robot uprising",
                "the galaxy",
                "the starship captain",
                "the cyborg",
                "the wormhole",
                "the space station",
                "the laser battle",
                "the android",
                "the distant future",
            ],
        },
    ),
    "politics": (
        ["politics", "the government", "the minister", "officials", "the state", "policy"],
        {
            "elections": [
                "the ballot",
                "the polling station",
                "the campaign rally",
                "voters",
                "the exit poll",
                "the candidate",
                "the election debate",
                "the runoff",
                "the turnout",
                "the swing region",
                "the campaign ad",
                "the vote count",
            ],
            "diplomacy": [
                "the summit",
                "the ambassador",
                "the peace talks",
                "the treaty",
                "the foreign minister",
                "sanctions",
                "the embassy",
                "the trade agreement",
                "the united nations",
                "the border dispute",
                "the envoy",
                "the joint statement",
            ],
            "legislation": [
                "the parliament",
                "the new bill",
                "the committee hearing",
                "the amendment",
                "the senators",
                "the budget vote",
                "the constitution",
                "the tax reform",
                "the opposition party",
                "the filibuster",
                "the supreme court",
                "the law",
            ],
        },
    ),
    "sport": (
        ["sport", "the season", "the supporters", "the championship", "the athletes", "the team"],
        {
            "football": [
                "the striker",
                "the penalty shootout",
                "the derby",
                "the goalkeeper",
                "the transfer window",
                "the league table",
                "the midfielder",
                "the stadium crowd",
                "the offside call",
                "the cup final",
                "the head coach",
                "the corner kick",
            ],
            "tennis": [
                "the grand slam",
                "the second serve",
                "the baseline rally",
                "the clay court",
                "the tiebreak",
                "the wildcard entry",
                "the backhand winner",
                "the umpire",
                "the doubles pair",
                "the match point",
                "the racket",
                "the qualifying draw",
            ],
            "motorsport": [
                "the pit stop",
                "the pole position",
                "the race car",
                "the tyre strategy",
                "the safety car",
                "the starting grid",
                "the lap record",
                "the paddock",
                "the constructor team",
                "the overtake",
                "the engine failure",
                "the chequered flag",
            ],
        },
    ),
    "tech": (
        ["technology", "tech", "the industry", "users", "the software", "innovation"],
        {
            "ai": [
                "the neural network",
                "machine learning",
                "the chatbot",
                "the language model",
                "the training data",
                "the algorithm",
                "artificial intelligence",
                "the GPU cluster",
                "the robot",
                "computer vision",
                "the deep learning lab",
                "the AI assistant",
            ],
            "gadgets": [
                "the smartphone",
                "the new laptop",
                "the smartwatch",
                "the battery life",
                "the wireless earbuds",
                "the camera sensor",
                "the tablet",
                "the charging cable",
                "the foldable screen",
                "the processor chip",
                "the headset",
                "the gadget review",
            ],
            "security": [
                "the hackers",
                "the data breach",
                "the password",
                "the ransomware",
                "the firewall",
                "encryption",
                "the phishing email",
                "the security patch",
                "the malware",
                "the zero-day exploit",
                "the cyber attack",
                "two-factor authentication",
            ],
        },
    ),
}

TEMPLATES = [
    "Today {x} was in the spotlight after {y} surprised everyone.",
    "Experts say {x} and {y} will shape {t} this year.",
    "Many readers asked us about {x}, {y} and {z}.",
    "A new report on {x} links it to {t}.",
    "Nobody expected {x} to overtake {y} so quickly.",
    "Here is what we know about {x} so far.",
    "Critics argue that {x} matters more than {y}.",
    "The debate around {t} now centres on {x}.",
    "Everyone is talking about {x} again, and {y} is part of the story.",
    "Why {x} could change how we think about {t}.",
    "Insiders compare {x} with {y}, but {z} is the real surprise.",
    "It started with {x}; by the evening {y} was trending.",
]
OWN, SIBLING = 0.70, 0.15  # slot filled from the post's sub-theme / another sub-theme of its topic


@dataclass
class PostTexts:
    """Texts with their topic and hidden sub-theme (an index into `subthemes[topic]`)."""

    text: list[str]
    topic: list[str]
    subtheme: np.ndarray
    subthemes: dict[str, list[str]]


def generated_posts(rng: np.random.Generator, n_posts: int) -> PostTexts:
    """`n_posts` texts, topics and sub-themes drawn uniformly; 3–5 sentences each."""
    topics = sorted(VOCABULARY)
    names = {t: sorted(VOCABULARY[t][1]) for t in topics}
    topic_idx = rng.integers(0, len(topics), n_posts)
    texts, topic_names, subtheme = [], [], np.empty(n_posts, dtype=np.int64)
    for i, k in enumerate(topic_idx):
        topic = topics[k]
        common, groups = VOCABULARY[topic]
        own = int(rng.integers(0, len(names[topic])))
        subtheme[i] = own
        siblings = [s for j, s in enumerate(names[topic]) if j != own]

        def phrase(topic=topic, own=own, siblings=siblings, common=common, groups=groups) -> str:
            draw = rng.random()
            if draw < OWN:
                pool = groups[names[topic][own]]
            elif draw < OWN + SIBLING:
                pool = groups[siblings[int(rng.integers(0, len(siblings)))]]
            else:
                pool = common
            return pool[int(rng.integers(0, len(pool)))]

        sentences = []
        for _ in range(int(rng.integers(3, 6))):
            template = TEMPLATES[int(rng.integers(0, len(TEMPLATES)))]
            t = common[int(rng.integers(0, len(common)))]
            sentence = template.format(x=phrase(), y=phrase(), z=phrase(), t=t)
            sentences.append(sentence[0].upper() + sentence[1:])
        texts.append(" ".join(sentences))
        topic_names.append(topic)
    return PostTexts(texts, topic_names, subtheme, names)


def real_posts(
    path: Path, rng: np.random.Generator, n_posts: int, n_subthemes: int = 3, seed: int = 0
) -> PostTexts:
    """`n_posts` articles sampled from a CSV (title, text, category or topic) with sub-themes
    found per topic by TF-IDF + NMF over the articles' words (argmax component)."""
    table = pd.read_csv(path, dtype=str, keep_default_na=False)
    topic_column = "topic" if "topic" in table.columns else "category"
    for column in ("text", topic_column):
        if column not in table.columns:
            raise ImportValidationError(
                path.name, 1, None, f"missing column {column!r} (need text and category or topic)"
            )
    title = table["title"] if "title" in table.columns else ""
    table = table.assign(full=(title + "\n\n" + table["text"]).str.strip())
    pick = np.sort(rng.choice(len(table), size=min(n_posts, len(table)), replace=False))
    table = table.iloc[pick].reset_index(drop=True)
    subtheme = np.zeros(len(table), dtype=np.int64)
    subthemes: dict[str, list[str]] = {}
    for topic, rows in table.groupby(topic_column, sort=True):
        labels, names = _word_clusters(
            rows["full"], max(1, min(n_subthemes, len(rows) // 10)), seed
        )
        subtheme[rows.index.to_numpy()] = labels
        subthemes[str(topic)] = names
    return PostTexts(table["full"].tolist(), table[topic_column].tolist(), subtheme, subthemes)


def _word_clusters(texts: pd.Series, k: int, seed: int) -> tuple[np.ndarray, list[str]]:
    """Sub-theme = argmax NMF component of TF-IDF over words that are neither rare (< 3% of the
    topic's articles: single stories) nor common (> 30%: the topic itself)."""
    from sklearn.decomposition import NMF
    from sklearn.feature_extraction.text import TfidfVectorizer

    words = TfidfVectorizer(
        stop_words="english", max_df=0.3, min_df=0.03, sublinear_tf=True, max_features=5000
    )
    try:
        matrix = words.fit_transform(texts)
    except ValueError:  # too few articles to leave any word in that band: one sub-theme
        return np.zeros(len(texts), dtype=np.int64), ["all"]
    k = min(k, matrix.shape[1])
    nmf = NMF(n_components=k, init="nndsvd", random_state=seed, max_iter=400)
    labels = nmf.fit_transform(matrix).argmax(axis=1)
    vocab = np.asarray(words.get_feature_names_out())
    return labels, ["/".join(vocab[np.argsort(c)[::-1][:3]]) for c in nmf.components_]
