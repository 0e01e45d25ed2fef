"""procsock's built-in backends, installed as `procsock_plugins` and registered through the same
`procsock` entry-point group a third-party plugin uses."""
