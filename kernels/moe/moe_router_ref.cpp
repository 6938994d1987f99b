// CPU twin of the MoE router (spec 3.5): sigmoid scores, selection on score + correction bias with
// grouped top-k, mixing weights from the unbiased scores. fp32; ties go to the lower id.
#include <algorithm>
#include <cmath>
#include <numeric>
#include <vector>

#include "engine/core/error.h"
#include "kernels/moe/moe.h"

namespace kl::kernels {
namespace {

// The `count` indices of the largest values, in descending value, lower index first on ties.
// `allowed` (optional) excludes indices. A stable sort gives the tie rule.
void top_indices(const std::vector<float>& val, const std::vector<char>* allowed, int64_t count,
                 std::vector<int64_t>& idx) {
  idx.clear();
  for (int64_t i = 0; i < int64_t(val.size()); ++i) {
    if (!allowed || (*allowed)[i]) idx.push_back(i);
  }
  std::stable_sort(idx.begin(), idx.end(), [&](int64_t a, int64_t b) { return val[a] > val[b]; });
  idx.resize(std::min<int64_t>(count, idx.size()));
}

}  // namespace

void moe_router_ref(const MoeRouterParams& p) {
  const int64_t E = p.num_experts;
  const int64_t G = p.num_groups;
  KL_CHECK(E > 0 && p.top_k > 0 && p.top_k <= E, "moe_router_ref: top_k {} of {} experts", p.top_k,
           E);
  KL_CHECK(G > 0 && E % G == 0, "moe_router_ref: {} experts not divisible into {} groups", E, G);
  KL_CHECK(p.topk_groups > 0 && p.topk_groups <= G, "moe_router_ref: topk_group {} of {} groups",
           p.topk_groups, G);
  KL_CHECK(p.topk_groups * (E / G) >= p.top_k,
           "moe_router_ref: {} kept groups of {} experts cannot supply top_k {}", p.topk_groups,
           E / G, p.top_k);
  KL_CHECK(!p.bias.data || p.bias.numel() == E, "moe_router_ref: bias has {} values, expected {}",
           p.bias.numel(), E);
  const int64_t per_group = E / G;
  std::vector<float> bias(E, 0.f);
  if (p.bias.data) {
    for (int64_t e = 0; e < E; ++e) bias[e] = p.bias.at(e);
  }

  std::vector<float> s(E), sel(E), group_score(G);
  std::vector<char> allowed(E);
  std::vector<int64_t> idx, top2, groups;
  for (int64_t t = 0; t < p.num_tokens; ++t) {
    const float* logits = p.logits + t * E;
    for (int64_t e = 0; e < E; ++e) {
      s[e] = 1.f / (1.f + std::exp(-logits[e]));
      sel[e] = s[e] + bias[e];
    }
    std::fill(allowed.begin(), allowed.end(), 1);
    if (p.topk_groups < G) {
      // Group score: the sum of the group's two best biased scores (its only one if it has one).
      std::vector<float> member(per_group);
      for (int64_t g = 0; g < G; ++g) {
        std::copy_n(sel.begin() + g * per_group, per_group, member.begin());
        top_indices(member, nullptr, 2, top2);
        group_score[g] = member[top2[0]] + (top2.size() > 1 ? member[top2[1]] : 0.f);
      }
      top_indices(group_score, nullptr, p.topk_groups, groups);
      std::fill(allowed.begin(), allowed.end(), 0);
      for (int64_t g : groups) std::fill_n(allowed.begin() + g * per_group, per_group, 1);
    }
    top_indices(sel, &allowed, p.top_k, idx);

    int32_t* ids = p.expert_ids + t * p.top_k;
    float* w = p.weights + t * p.top_k;
    float sum = 0.f;
    for (int64_t i = 0; i < p.top_k; ++i) {
      ids[i] = static_cast<int32_t>(idx[i]);
      w[i] = s[idx[i]];  // the unbiased score: the bias only steers selection
      sum += w[i];
    }
    for (int64_t i = 0; i < p.top_k; ++i) {
      if (p.renormalize) w[i] = w[i] / (sum + 1e-20f);
      w[i] *= p.routed_scaling;
    }
  }
}

}  // namespace kl::kernels
