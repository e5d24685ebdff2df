"""How one fit is built and driven: recipe, engine, loggers, schedules, stages and the rest."""
