"""Pure statistics over sufficient statistics (GrowthBook gbstats style): each function takes
counts and sums, never a database, so it can be tested alone against scipy/statsmodels."""
