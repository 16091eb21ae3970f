"""The class host's side of the lab (vagrant/class-host.sh): many learners on one JupyterHub.

Above the lab layer, like it outside the runtime's core: the core never imports this package.
client: a learner as the hub sees one (log in with the card's password, start the server, run cells in a
kernel), for the class host's acceptance checks, its isolation tests and the capacity benchmark.
"""
