"""A small world for the test-arm tests: 120 posts in 5 topics with real sentences, 40 users
who each like one topic, 60 days of views and likes. Small enough to embed and train in
seconds; structured enough that embeddings carry the users' taste."""

from __future__ import annotations

from datetime import datetime, timedelta

import numpy as np
from feedlab.models.catalog import PostCatalog, UserProfiles
from feedlab.models.history import History

START = datetime(2024, 1, 1)
DAYS = 60
T0 = START + timedelta(days=45)
TOPICS = {
    "sport": [
        "The striker scored twice as the home side won the league match",
        "A late goal settled the cup final in front of a full stadium",
        "The tennis champion lost the opening set but won in five",
        "The marathon runner broke the course record in the rain",
    ],
    "tech": [
        "The new smartphone chip doubles battery life, engineers say",
        "A software update fixes the security flaw in home routers",
        "The startup released an open-source database for sensors",
        "Researchers built a faster laptop processor with less power",
    ],
    "politics": [
        "Parliament voted on the budget after a long night of debate",
        "The minister resigned over the election funding scandal",
        "Voters in the capital chose a new mayor on Sunday",
        "The party leader promised lower taxes in the manifesto",
    ],
    "business": [
        "Shares of the bank fell after profits missed forecasts",
        "The retailer will cut jobs as sales slow over winter",
        "Oil prices rose as the cartel agreed to limit output",
        "The airline merger was approved by the competition regulator",
    ],
    "entertainment": [
        "The film won best picture at the awards ceremony",
        "The band announced a world tour after the album topped charts",
        "The actress will star in a new drama series next year",
        "Critics praised the musical that opened on Broadway",
    ],
}
VARIANTS = [
    "",
    " Reporters followed the story all week.",
    " More details are expected soon.",
    " It was the talk of the town.",
    " Readers sent in many comments.",
    " The full report is online.",
]


def catalog() -> PostCatalog:
    ids, texts, topics = [], [], []
    for t, (topic, sentences) in enumerate(TOPICS.items()):
        for s, sentence in enumerate(sentences):
            for v, tail in enumerate(VARIANTS):
                ids.append(1000 + 100 * t + 10 * s + v)
                texts.append(sentence + tail)
                topics.append(topic)
    return PostCatalog.from_records(ids, texts, topics)


def history(seed: int = 0) -> History:
    """Each user views 2 random posts a day and likes 70% of their topic's, 5% of others."""
    rng = np.random.default_rng(seed)
    posts = catalog()
    topic_names = list(TOPICS)
    post_topic = np.array([topic_names.index(t) for t in posts.topics])
    ts, users, items, actions = [], [], [], []
    for user in range(1, 41):
        favourite = user % len(topic_names)
        for day in range(DAYS):
            for pos in rng.choice(len(posts), size=2, replace=False):
                at = START + timedelta(days=day, seconds=int(rng.integers(0, 86_400)))
                pid = int(posts.post_ids[pos])
                ts.append(at)
                users.append(user)
                items.append(pid)
                actions.append("view")
                liked = rng.random() < (0.7 if post_topic[pos] == favourite else 0.05)
                if liked:
                    ts.append(at)
                    users.append(user)
                    items.append(pid)
                    actions.append("like")
    return History.from_arrays(np.array(ts, "datetime64[us]"), users, items, actions)


def profiles() -> UserProfiles:
    return UserProfiles.from_records(
        list(range(1, 41)), [{"age": 20 + u % 30, "gender": "MF"[u % 2]} for u in range(1, 41)]
    )
