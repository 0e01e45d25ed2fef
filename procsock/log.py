"""procsock's debug messages, to the "procsock" logger, without the start-up cost of `logging`.

Nobody can listen to a logger before `logging` is imported, so a message is passed on only once
something imported it (an application, the command's --debug, a plugin); until then it costs a
dictionary lookup. Modules import this one (`from procsock import log`) and call `log.debug`.
"""

import sys


def debug(message: str, *args: object, exc_info: bool = False) -> None:
    """`logging.getLogger("procsock").debug(message, *args)`, if `logging` is imported."""
    logging = sys.modules.get("logging")
    if logging is not None:
        logging.getLogger("procsock").debug(message, *args, exc_info=exc_info, stacklevel=2)
