"""Thin Lightning wrappers: losses' weighting, optimizers, schedules and logging live here,
the networks themselves (plain `nn.Module`s) in `genie/`."""
