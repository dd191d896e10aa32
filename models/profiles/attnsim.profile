# attnsim's own implementation (sim/exec/): what `attnsim run` does, with the overlap that
# `attnsim calibrate` measured on the machine (the machine file's overlap.* lines; where the
# machine has none, ideal).
name = attnsim
overlap = measured
# Ring's backward (and the hybrid's ring across its groups) sends a block's K, V and its dK, dV
# accumulators together, after the step's compute has added this rank's share
# (sim/exec/ring_pass.c): nothing of that transfer runs under compute.
overlap.ring.ring_kv_grad_steps = off
overlap.hybrid.ring_kv_grad_steps = off
collectives = ring        # point-to-point rings, one message per step (sim/exec/comm.c)
staircase = fused         # one kernel call per tile: the kernels mask by token position
