"""The real local servers (S3 API, Lambda endpoint) are fixtures every test module may use."""

pytest_plugins = ["servers"]
