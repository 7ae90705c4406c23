"""`--engine spark`: posts embedded and assigned in Spark tasks, the clustering fitted on a sample on the driver.

`session` starts Spark (local[N] here, or the cluster a master URL names) and turns a missing
Java or a failed start into one `TopicliError`; `tasks` holds what runs on executors (the
encoder and the bundle, each loaded once per Python worker); `engine` is the driver's side:
read, embed, sample, fit with today's method, broadcast the bundle, assign, write. Nothing here
imports the CLI, rendering or Azure: the same modules run on Azure ML serverless Spark.
"""

# What the CLI calls; `tasks` runs on executors and `job` is the Azure ML job's entry script (run by path).
__all__ = ["engine", "session"]
