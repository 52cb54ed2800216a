"""``stark run``: the stages as plain functions, the whole run, the baselines and the delivered model."""
