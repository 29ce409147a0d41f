// channel_shuffle (ShuffleNet): view the channels as (groups, C / groups) and transpose:
// out[k * groups + j] = in[j * (C / groups) + k].
#include "layers.hpp"

namespace pydeconv {
namespace {

class ChannelShuffle : public Layer {
 public:
  using Layer::Layer;

  Shape shape(const std::vector<Shape>& in) override {
    groups_ = ints("groups", {})[0];  // required: present (schema)
    if (in[0].c % groups_ != 0)
      bad("attribute 'groups' (" + std::to_string(groups_) + ") must divide the input's " +
          std::to_string(in[0].c) + " channels");
    return in[0];
  }

  void forward(const Ctx& ctx, ForwardArgs& a) const override {
    (void)ctx;
    kernels::channel_shuffle_forward_ref(*a.in[0], groups_, *a.out);
  }

  // All rules: the inverse permutation.
  void backward(const Ctx& ctx, BackwardArgs& a) const override {
    (void)ctx;
    kernels::channel_shuffle_backward_ref(*a.gout, groups_, *a.gin[0]);
  }

 private:
  int64_t groups_ = 1;
};

}  // namespace

std::unique_ptr<Layer> make_channel_shuffle(const LayerSpec& s) {
  return std::make_unique<ChannelShuffle>(s);
}

}  // namespace pydeconv
