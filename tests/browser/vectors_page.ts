/**
 * The page side of the browser tier: exposes the test vectors and the backend's adapter to the
 * DevTools driver as `globalThis.moejitTest`.
 */
import * as mj from "../../browser.ts";
import { runCases, trainingStep } from "./vectors.ts";

Object.assign(globalThis, {
  moejitTest: {
    mj,
    runCases,
    trainingStep,
    /** The adapter and limits moejit's device got (null without WebGPU). */
    info: () => mj.backendInfo(),
  },
});
