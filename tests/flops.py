"""Counting flops with torch's FlopCounterMode: attention must run as plain matmuls to be counted."""

import torch

try:  # torch >= 2.3
    from torch.nn.attention import SDPBackend, sdpa_kernel

    def math_attention():
        """Run scaled_dot_product_attention with the math backend (fused CPU kernels are not counted)."""
        return sdpa_kernel(SDPBackend.MATH)
except ImportError:  # torch 2.2

    def math_attention():
        """Run scaled_dot_product_attention with the math backend (fused CPU kernels are not counted)."""
        return torch.backends.cuda.sdp_kernel(enable_flash=False, enable_mem_efficient=False, enable_math=True)
