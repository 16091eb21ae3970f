"""minicontainer: a small, readable container runtime for learning how containers work.

Start with container.Container and spec.ContainerSpec; each mechanism has its own module
(kernel, namespaces, rootfs, cgroups, network, security), and inspect reads what the kernel holds.
"""

__version__ = "0.1.0"
