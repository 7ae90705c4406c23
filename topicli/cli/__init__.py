"""The `topicli` command line: one module per command group, joined in `app`.

Commands only wire settings, library and rendering (tables are built in `render`). Command
modules import the library inside the command functions, not at the top, for startup:
`topicli --help`, `topicli init` and every usage error then answer without first loading
numpy, pandas, scikit-learn, torch and onnxruntime, which the library needs and these do not.
"""

from topicli.cli.app import app, main

__all__ = ["app", "main"]
