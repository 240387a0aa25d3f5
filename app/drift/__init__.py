"""Drift monitoring: context-feature PSI, per-arm reward drift and SRM, raised as alerts."""
