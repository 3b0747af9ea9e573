// nn::Dropout: zeroes elements with probability p while training (scaling the rest), identity in eval.
#pragma once

#include <iosfwd>

#include "nn/cloneable.h"
#include "nn/holder.h"
#include "nn/options.h"

namespace ember::nn {

struct DropoutOptions {
  DropoutOptions(double p = 0.5) : p_(p) {}  // NOLINT: Dropout(0.2)
  EMBER_ARG(double, p);
  EMBER_ARG(bool, inplace) = false;
};

class DropoutImpl : public Cloneable<DropoutImpl> {
 public:
  explicit DropoutImpl(const DropoutOptions& options = {});
  explicit DropoutImpl(double p) : DropoutImpl(DropoutOptions(p)) {}

  void reset() override {}  // no parameters or buffers
  // functional::dropout with training = is_training().
  Tensor forward(const Tensor& input);
  // Dropout(p=0.5, inplace=False)
  void pretty_print(std::ostream& os) const override;

  DropoutOptions options;
};
EMBER_MODULE(Dropout);

}  // namespace ember::nn
