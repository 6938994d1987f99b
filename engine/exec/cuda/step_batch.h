// One step's metadata for the GPU forward pass, built on the host from a StepPlan and uploaded
// in one copy (principle 5: ids and ranges only). Sequences are reordered internally so that the
// ones whose KDA runs token by token (decode, short chunks) come first and the chunked-prefill
// ones after, each group a contiguous range of token rows.
#pragma once

#include <cstdint>
#include <vector>

#include "engine/exec/step_plan.h"
#include "kernels/cuda/cuda_fwd.h"
#include "kernels/mla/mla_cuda.h"

namespace kl {

// Chunks longer than this use the chunked KDA kernel (HF's dispatch uses 64 as well).
inline constexpr int64_t kKdaChunkedMinTokens = 64;

struct StepBatch {
  std::vector<int> order;  // order[i]: index into plan.seqs of the i-th sequence here
  int num_seqs = 0;
  int num_recurrent = 0;  // the first num_recurrent sequences use the recurrent KDA kernel
  int64_t num_tokens = 0;
  int64_t recurrent_tokens = 0;  // rows [0, recurrent_tokens) belong to those sequences
  int64_t max_len_all = 0, max_len_recurrent = 0, max_len_chunked = 0;
  int64_t page_table_stride = 0;
  int64_t decode_keys_bound =
      0;  // CUDA-graph steps: MLA decode launch shapes fixed (see mla_cuda.h)

  // Host copies (in internal order).
  std::vector<int32_t> token_ids;     // [num_tokens]
  std::vector<int32_t> cu_seqlens;    // [num_seqs + 1]
  std::vector<int32_t> cu_chunked;    // [num_seqs - num_recurrent + 1], relative to its rows
  std::vector<int32_t> state_blocks;  // [num_seqs]
  std::vector<int64_t> slot_mapping;  // [num_tokens]
  std::vector<int32_t> page_tables;   // [num_seqs, page_table_stride], -1 padded
  std::vector<kernels::MlaSeqSpan> spans;
  // Rows whose logits are computed, in plan order of the sequences that asked (kLast: the chunk's
  // last row; kAll: every row), and for each such plan sequence its first index in logit_rows.
  std::vector<int32_t> logit_rows;
  std::vector<int> logit_seq;    // plan index of the sequence of each logit row
  std::vector<int> logit_begin;  // per plan seq: first logit row index (-1: none)

  // Device copies.
  const int32_t* d_token_ids = nullptr;
  const int32_t* d_cu_seqlens = nullptr;
  const int32_t* d_cu_chunked = nullptr;
  const int32_t* d_state_blocks = nullptr;
  const int64_t* d_slot_mapping = nullptr;
  const int32_t* d_page_tables = nullptr;
  const kernels::MlaSeqSpan* d_spans = nullptr;
  const int32_t* d_logit_rows = nullptr;
};

// Fills the host side from resolved SeqSteps (no kPrevSampledToken left); checks token ids,
// pages and state blocks against the limits (kl::Error naming the sequence).
// `min_page_table_stride` fixes the page-table row width (CUDA-graph steps, whose device
// layout must not change between replays); 0: the longest page table of the step.
void build_step_batch(const std::vector<SeqStep>& seqs, int64_t vocab, int64_t num_pages,
                      int64_t num_state_blocks, StepBatch& b, int64_t min_page_table_stride = 0);

// A pinned host buffer and a device buffer of the same size; stages arrays and uploads them in
// one asynchronous copy. The previous upload must be complete before stage() is called again
// (the executor synchronises at the end of every step).
class MetadataUploader {
 public:
  MetadataUploader() = default;
  ~MetadataUploader();
  MetadataUploader(const MetadataUploader&) = delete;
  MetadataUploader& operator=(const MetadataUploader&) = delete;

  // Fills b's device pointers.
  void upload(StepBatch& b, CudaStream stream);
  // Makes room for `bytes` now, so that later uploads up to that size keep the same device
  // addresses (CUDA graphs capture them).
  void reserve(int64_t bytes);
  // Stages extra arrays (sampling); returns byte offsets usable with device() after flush().
  void begin();
  int64_t add(const void* data, int64_t bytes);
  void flush(CudaStream stream);
  const char* device(int64_t offset) const { return dev_ + offset; }

 private:
  std::vector<char> scratch_;
  char* pinned_ = nullptr;
  char* dev_ = nullptr;
  int64_t capacity_ = 0;
};

}  // namespace kl
