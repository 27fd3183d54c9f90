"""Third-party libraries kept from talking to the user: their warnings and log lines below ERROR."""

from __future__ import annotations

import contextlib
import logging
import warnings


@contextlib.contextmanager
def quiet_third_party():
    """Keep the libraries that load, export and run models, or read PDFs, from talking to the user: their
    warnings (tracer warnings of an export, deprecations) and their log lines below ERROR ("Could not infer
    whether the model was already converted…", NNCF's tables, pypdf's repairs of a damaged file). Libraries such
    as optimum reset their own loggers' levels when first imported, so this disables logging below ERROR for the
    block rather than setting levels. What matters reaches the user as our own notes and errors."""
    previous = logging.root.manager.disable
    logging.disable(logging.WARNING)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        logging.disable(previous)
