// nn::functional: the functional forms of the layers and the losses.
#pragma once

#include "nn/functional/conv.h"
#include "nn/functional/dropout.h"
#include "nn/functional/embedding.h"
#include "nn/functional/linear.h"
#include "nn/functional/loss.h"
#include "nn/functional/norm.h"
