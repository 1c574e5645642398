"""Real-time risk control at order intake and payment (``docs/risk.md``)."""
