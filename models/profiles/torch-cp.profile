# PyTorch context parallel (torch.distributed.tensor.experimental.context_parallel, torch 2.11):
# Ring Attention over SDPA kernels, as experiments/cp-peers measures it (docs/performance.md,
# "Before the Hopper kernels (4 x H100)": B = 1, H = 32, d = 128, bf16).
name = torch-cp
# Overlap of the K/V rotation with the block's attention. Non-causal forward on 4 x H100, per
# GPU against single-GPU cuDNN SDPA (634 and 604 TF/s): 32k, 454 TF/s = 0.72; 128k, 568 TF/s =
# 0.94. With the dev-4gpu rates (139 GB/s ring shift, cuDNN's 634 TF/s) a step computes 1.8 ms
# (32k) or 29 ms (128k) beside a 0.97 ms or 3.9 ms transfer: hiding nothing predicts 0.72 and
# 0.91, hiding all of it 1.0 and 1.0. The 32k figure says none of it is hidden, the 128k one a
# third: 0.15.
overlap.ring = 0.15
staircase = fused         # SDPA masks each block itself (head-tail load balancing)
# SDPA's kernels (cuDNN) against the machine's attention rate: the datacentre presets and
# dev-4gpu / dev-h100 give cuDNN's rate already (1). Against a machine calibrated with attnsim's
# kernels on an H100, forward 1.0 (Ring 610 TF/s per GPU vs cuDNN 602, 2 x H100, 128k) and
# backward about 1.15 (attnsim's backward 0.85-0.89 of cuDNN's): set compute_scale to match.
compute_scale = 1
