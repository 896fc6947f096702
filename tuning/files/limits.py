"""Default bounds on what the project reads: the config's ``model`` section takes its defaults from here, so the
functions of this package that are called without a config keep the same bounds."""

MODEL_MAX_BYTES = 256 * 1024 * 1024  # model.max_bytes: a model file plus its external data
DOWNLOAD_DEADLINE_S = 600  # model.download_timeout_s: a whole download, retries and back-off included
