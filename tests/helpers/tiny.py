"""The tiny CoinRun dataset the `tiny_root` fixture (conftest.py) records and splits."""

# 8 levels x 150 steps, seed 0: small enough to record in about a second, and levels 3, 6 and 7
# die mid-episode, so the restart handling is exercised (tests assert that, not assume it).
TINY = dict(env_name="Coinrun", num_envs=8, timeout=150, seed=0)
TINY_RATIOS = (0.5, 0.25, 0.25)
