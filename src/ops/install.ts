/**
 * Installs the op functions behind Tensor's methods (`x.add(y)` is `add(x, y)`): the op modules
 * build tensors, so src/tensor.ts cannot import them. The modules that make tensors from data
 * (creation.ts) import this one, and so do mod.ts and browser.ts, first.
 */
import { installTensorOps } from "../tensor.ts";
import * as ew from "./elementwise.ts";
import * as rd from "./reduce.ts";
import * as mv from "./movement.ts";
import * as ix from "./indexing.ts";
import { matmul } from "./linalg.ts";
import { stopGradient } from "./meta.ts";

installTensorOps({ ew, rd, mv, ix, matmul, stopGradient });
