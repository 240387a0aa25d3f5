"""Offline policy simulation. It imports app.bandits and app.stats, never a copy of them."""
