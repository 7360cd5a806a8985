"""What a model costs: parameters, multiply-adds (MACs; FLOPs = 2 x MACs), memory, latency."""
from cnnzoo.profiling.counting import MacCount, count_macs, peak_live_tensor_bytes
from cnnzoo.profiling.latency import LatencyResult, measure_latency, measure_matmul_peak
from cnnzoo.profiling.summary import ModelSummary, SummaryRow, summary

__all__ = ["summary", "ModelSummary", "SummaryRow", "count_macs", "MacCount", "peak_live_tensor_bytes",
           "measure_latency", "LatencyResult", "measure_matmul_peak"]
