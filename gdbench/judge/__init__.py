"""Judging: statistics over rounds, the regression gate, the A/B and audit verdicts, the
per-step limits and the shared target. Pure functions of recorded timings."""
