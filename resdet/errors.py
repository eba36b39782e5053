"""The one exception type for mistakes a user can make and fix (bad path, key, file or option).

Tools catch :class:`UserError` at the top and print its message as one sentence, without a
traceback, unless ``--debug`` is given or ``RESDET_DEBUG=1`` is set (see :mod:`resdet.cli`).
"""


class UserError(Exception):
    """A problem the user caused and can fix; the message names the file or key and what to do."""
