"""`feedlab dashboard`: the analysts' web page over the experiments database."""
