# The Attention2D paper's implementations (Elango 2025, arXiv 2503.15758), as far as its text
# describes them (what was recovered is in the project's notes on the paper; the rest is marked
# as an assumption). One profile for its three algorithms.
name = a2d-paper
# Ring Attention (Liu et al.), the baseline: whether it overlapped its transfers with compute was
# not recovered. Assumption: as designed (each step hides its transfer behind its compute).
overlap.ring = ideal
# A2D-NO: NCCL's topology-aware collectives (row all-gather of Q, column all-gather of K/V, row
# reduce-scatter of the partials); no overlap (it has no overlapped phase).
collectives.a2d-no = nccl
# One NCCL collective call's fixed cost. Assumption: 20 us (a launch and a ring's start-up over
# InfiniBand; not measured).
collective_alpha = 20 us
# A2D-O: point-to-point rings overlapped with compute, whose tiles (N/P queries of stride P
# against N/sqrt(P) keys of stride sqrt(P)) carry a staircase causal mask that FlashAttention
# does not take: each such tile runs as one call per column member, on smaller tiles.
overlap.a2d-o = ideal
staircase.a2d-o = split
# Assumption: the split calls reach 0.8 of the machine's rate (FA2 on tiles of N/P x N/P tokens
# instead of N/P x N/sqrt(P)); the paper gives no figure.
staircase_efficiency.a2d-o = 0.8
# Assumption: A2D-O's plain point-to-point rings, which the paper says do not exploit the
# topology, reach 0.8 of a link's rate (NCCL's collectives, A2D-NO, the full rate).
link_fraction.ring_shift.a2d-o = 0.8
