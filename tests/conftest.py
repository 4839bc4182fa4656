"""Shared pytest set-up: report which Keras backend this pass runs on."""

import keras


def pytest_report_header(config):
    return f"keras {keras.__version__}, backend {keras.backend.backend()}"
