"""Replaying a logged stream through the whole loop offline (``driftloop replay``): ingest,
monitor, detectors, policy, retrain, gate and promotion in simulated time, beside
never-retrain and periodic schedules, so thresholds are chosen on the user's own history."""
