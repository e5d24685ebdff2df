"""Synthetic datasets for demos and tests."""
from .numbers import numbers_frame, numbers_model
from .security import define_security_flows, security_converters, security_frame, security_project
from .security_model import SecurityNet

# The factory function `security_model` is not re-exported here: the name would hide the submodule
# `synthetic.security_model` that dotted config paths resolve through.
__all__ = ["numbers_frame", "numbers_model", "security_frame", "security_converters", "define_security_flows",
           "security_project", "SecurityNet"]
