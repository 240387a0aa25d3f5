"""The statistics engine: pure (numpy, scipy, statsmodels, pandas), typed, vectorised.

It knows nothing of HTTP or databases: the service fills its sufficient statistics from SQL
aggregates, and the simulations and notebooks call it directly. app.bandits builds on it
(Thompson sampling's allocation is P(arm is best)); it never imports app.bandits.
"""
