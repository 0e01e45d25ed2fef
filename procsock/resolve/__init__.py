"""The resolver's rooms, one job each, in the order a snapshot runs through them.

`plan` decides what to read where (kinds, namespaces, the kind of one fd); `collect` asks the
backends of one kind in one namespace, falling back, and returns an Answer; `join` puts the
answers together with the fds that hold each socket; `explain` words what the user should know
(Notes) and why held sockets went unreported. `procsock.resolver.Resolver` drives them.
"""
