// StepPlan sequences -> StepBatch (internal order, varlen offsets, slots, page tables, logit rows)
// and its upload.
#include "engine/exec/cuda/step_batch.h"

#include <cuda_runtime.h>

#include <algorithm>
#include <cstring>

#include "engine/core/error.h"
#include "engine/exec/kv_layout.h"

namespace kl {

void build_step_batch(const std::vector<SeqStep>& seqs, int64_t vocab, int64_t num_pages,
                      int64_t num_state_blocks, StepBatch& b, int64_t min_page_table_stride) {
  b = StepBatch{};
  const int n = static_cast<int>(seqs.size());
  for (int pass = 0; pass < 2; ++pass)
    for (int i = 0; i < n; ++i) {
      const bool chunked = static_cast<int64_t>(seqs[i].token_ids.size()) > kKdaChunkedMinTokens;
      if (chunked == (pass == 1)) b.order.push_back(i);
    }
  b.num_seqs = n;
  size_t max_pages = static_cast<size_t>(std::max<int64_t>(min_page_table_stride, 1));
  for (const SeqStep& s : seqs) max_pages = std::max(max_pages, s.page_table.size());
  b.page_table_stride = static_cast<int64_t>(max_pages);
  b.page_tables.assign(static_cast<size_t>(n) * max_pages, -1);
  b.cu_seqlens.push_back(0);
  b.cu_chunked.push_back(0);
  for (int j = 0; j < n; ++j) {
    const SeqStep& s = seqs[b.order[j]];
    const int64_t len = static_cast<int64_t>(s.token_ids.size());
    KL_CHECK(len > 0, "sequence {}: empty chunk", s.seq_id);
    KL_CHECK(s.state_block >= 0 && s.state_block < num_state_blocks,
             "sequence {}: state block {} out of range [0, {})", s.seq_id, s.state_block,
             num_state_blocks);
    const bool chunked = len > kKdaChunkedMinTokens;
    if (!chunked) {
      ++b.num_recurrent;
      b.recurrent_tokens += len;
      b.max_len_recurrent = std::max(b.max_len_recurrent, len);
    } else {
      b.max_len_chunked = std::max(b.max_len_chunked, len);
      b.cu_chunked.push_back(b.cu_chunked.back() + static_cast<int32_t>(len));
    }
    b.max_len_all = std::max(b.max_len_all, len);
    kernels::MlaSeqSpan span;
    span.row_begin = static_cast<int32_t>(b.num_tokens);
    span.num_rows = static_cast<int32_t>(len);
    span.num_computed = static_cast<int32_t>(s.num_computed_tokens);
    b.spans.push_back(span);
    for (size_t p = 0; p < s.page_table.size(); ++p) {
      KL_CHECK(s.page_table[p] >= 0 && s.page_table[p] < num_pages,
               "sequence {}: page {} out of range [0, {})", s.seq_id, s.page_table[p], num_pages);
      b.page_tables[j * max_pages + p] = s.page_table[p];
    }
    for (int64_t i = 0; i < len; ++i) {
      const int32_t t = s.token_ids[i];
      KL_CHECK(t >= 0 && t < vocab, "token id {} outside the vocabulary [0, {})", t, vocab);
      b.token_ids.push_back(t);
      const int64_t pos = s.num_computed_tokens + i;
      const size_t page_idx = static_cast<size_t>(pos / kPageSize);
      KL_CHECK(page_idx < s.page_table.size(),
               "sequence {}: token {} has no page (page table holds {} pages)", s.seq_id, pos,
               s.page_table.size());
      b.slot_mapping.push_back(int64_t{s.page_table[page_idx]} * kPageSize + pos % kPageSize);
    }
    b.num_tokens += len;
    b.cu_seqlens.push_back(static_cast<int32_t>(b.num_tokens));
    b.state_blocks.push_back(s.state_block);
  }
  // Logit rows in plan order.
  std::vector<int32_t> first_row(n);
  for (int j = 0; j < n; ++j) first_row[b.order[j]] = b.spans[j].row_begin;
  b.logit_begin.assign(n, -1);
  for (int i = 0; i < n; ++i) {
    const SeqStep& s = seqs[i];
    if (s.logits == LogitsMode::kNone) continue;
    const int32_t len = static_cast<int32_t>(s.token_ids.size());
    const int32_t rows = s.logits == LogitsMode::kAll ? len : 1;
    b.logit_begin[i] = static_cast<int>(b.logit_rows.size());
    for (int32_t r = len - rows; r < len; ++r) {
      b.logit_rows.push_back(first_row[i] + r);
      b.logit_seq.push_back(i);
    }
  }
}

MetadataUploader::~MetadataUploader() {
  cudaFreeHost(pinned_);
  cudaFree(dev_);
}

void MetadataUploader::reserve(int64_t bytes) {
  if (bytes <= capacity_) return;
  const int64_t cap = std::max<int64_t>(bytes * 2, 1 << 20);
  cudaFreeHost(pinned_);
  cudaFree(dev_);
  pinned_ = nullptr;
  dev_ = nullptr;
  capacity_ = 0;
  KL_CHECK(cudaMallocHost(&pinned_, cap) == cudaSuccess, "cannot allocate {} B of pinned memory",
           cap);
  KL_CHECK(cudaMalloc(&dev_, cap) == cudaSuccess, "cannot allocate {} B of GPU memory", cap);
  capacity_ = cap;
}

void MetadataUploader::begin() {
  scratch_.clear();
}

int64_t MetadataUploader::add(const void* data, int64_t bytes) {
  const int64_t offset = (static_cast<int64_t>(scratch_.size()) + 15) / 16 * 16;
  scratch_.resize(offset + bytes);
  if (bytes) std::memcpy(scratch_.data() + offset, data, bytes);
  return offset;
}

void MetadataUploader::flush(CudaStream stream) {
  const int64_t n = static_cast<int64_t>(scratch_.size());
  reserve(n);
  if (n == 0) return;
  std::memcpy(pinned_, scratch_.data(), n);
  const cudaError_t e = cudaMemcpyAsync(dev_, pinned_, n, cudaMemcpyHostToDevice, stream);
  KL_CHECK(e == cudaSuccess, "metadata upload failed: {}", cudaGetErrorString(e));
}

void MetadataUploader::upload(StepBatch& b, CudaStream stream) {
  begin();
  auto put = [&](const auto& v) {
    return add(v.data(), static_cast<int64_t>(v.size() * sizeof(v[0])));
  };
  const int64_t tok = put(b.token_ids), cu = put(b.cu_seqlens), cuc = put(b.cu_chunked),
                blocks = put(b.state_blocks), slots = put(b.slot_mapping),
                pages = put(b.page_tables), spans = put(b.spans), rows = put(b.logit_rows);
  flush(stream);
  b.d_token_ids = reinterpret_cast<const int32_t*>(device(tok));
  b.d_cu_seqlens = reinterpret_cast<const int32_t*>(device(cu));
  b.d_cu_chunked = reinterpret_cast<const int32_t*>(device(cuc));
  b.d_state_blocks = reinterpret_cast<const int32_t*>(device(blocks));
  b.d_slot_mapping = reinterpret_cast<const int64_t*>(device(slots));
  b.d_page_tables = reinterpret_cast<const int32_t*>(device(pages));
  b.d_spans = reinterpret_cast<const kernels::MlaSeqSpan*>(device(spans));
  b.d_logit_rows = reinterpret_cast<const int32_t*>(device(rows));
}

}  // namespace kl
