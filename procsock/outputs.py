"""Files procsock writes (--save-diag, capture bundles): whole or not at all."""

import contextlib
import os
import tempfile
from typing import BinaryIO, Iterator


@contextlib.contextmanager
def replacing(path: str) -> Iterator[BinaryIO]:
    """A file written beside `path` and renamed over it when the block ends without error (removed
    when it fails), so a failed write leaves `path` as it was; synced before the rename, with the
    mode open() would have given (not mkstemp's 0600). A path that cannot be written fails before
    the block runs."""
    directory, name = os.path.split(os.path.abspath(path))
    try:
        fd, temporary = tempfile.mkstemp(prefix=".%s." % name, suffix=".tmp", dir=directory)
    except OSError as exc:
        raise OSError(exc.errno, exc.strerror, path) from None
    try:
        with os.fdopen(fd, "wb") as f:
            umask = os.umask(0)
            os.umask(umask)
            os.fchmod(f.fileno(), 0o666 & ~umask)
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(temporary, path)
    except BaseException:
        os.unlink(temporary)
        raise
