"""The direction model: network (Keras), training (walk-forward), evaluation, registry (MLflow),
fast numpy inference."""

import os

# TensorFlow's C++ start-up chatter is noise in CLI output and ECS logs; errors still surface as exceptions.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
