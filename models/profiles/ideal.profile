# The ideal implementation of cost-model.md: every overlapped step hides its transfer behind its
# compute as far as it can (max(compute, transfer)), point-to-point rings at the machine's
# rates, one kernel call per tile. The time model's assumptions before measured overlap.
name = ideal
overlap = ideal
collectives = ring
staircase = fused
