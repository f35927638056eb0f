"""The project's defaults, each written once: the config's, the verbs' and the validator's.

Standard library only, and imports nothing: ``overlaylab.hostops`` and the config both read it.
"""

from __future__ import annotations

#: ``etcd.clientPort`` and ``etcd.peerPort``, and what ``preflight`` checks when not told.
ETCD_CLIENT_PORT = 2379
ETCD_PEER_PORT = 2380

#: A local stack's etcd heartbeat and election timeout in ms, unless the stack sets
#: ``etcd.heartbeatMs``/``electionMs``. Its members share one machine's bridge: the round trip
#: is about 0.05 ms, so what bounds the heartbeat is how late a loaded machine schedules etcd,
#: not the network (etcd's tuning guide; docs/benchmarks.md measures the choice). etcd's own
#: defaults, 100 and 1000, are for a LAN and are what an SSH stack gets unless it sets them.
LOCAL_ETCD_TIMING = (25, 250)

#: ``lab.mtu``: the MTU of the hosts' own interfaces on the segment (the kernel's default too).
UNDERLAY_MTU = 1500

#: What VXLAN adds to a container's IP packet on the underlay: the inner Ethernet header 14,
#: VXLAN 8, UDP 8 and the outer IPv4 header 20 (the outer Ethernet header is not in the MTU).
#: Docker's overlay driver subtracts the same 50 (libnetwork's ``vxlanEncap``).
VXLAN_OVERHEAD = 50

#: The MTU Docker's overlay driver gives its VXLAN packets when the network sets no
#: ``com.docker.network.driver.mtu`` (libnetwork's own default, not ours).
DOCKER_OVERLAY_MTU = 1500
