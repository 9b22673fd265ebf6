/**
 * The WebGPU device: found once, with the adapter's real limits requested (a device asked for
 * nothing gets only 8 storage buffers per stage), and errors that surface instead of silently
 * producing zeros.
 */
import { envVar } from "../env.ts";

export interface DeviceInfo {
  adapter: {
    vendor: string;
    architecture: string;
    device: string;
    description: string;
    fallback: boolean;
  };
  backendHint: string;
  limits: Record<string, number>;
  features: string[];
}

export interface Gpu {
  device: GPUDevice;
  info: DeviceInfo;
}

const REQUESTED_LIMITS = [
  "maxStorageBuffersPerShaderStage",
  "maxStorageBufferBindingSize",
  "maxBufferSize",
  "maxComputeWorkgroupStorageSize",
  "maxComputeInvocationsPerWorkgroup",
  "maxComputeWorkgroupSizeX",
  "maxComputeWorkgroupSizeY",
  "maxComputeWorkgroupSizeZ",
  "maxComputeWorkgroupsPerDimension",
  "maxBindGroups",
  "minStorageBufferOffsetAlignment",
] as const;

/** Raised for device loss and uncaptured validation errors. */
export class DeviceError extends Error {
  override name = "DeviceError";
}

let gpuPromise: Promise<Gpu | null> | null = null;
let lost: string | null = null;
let uncaptured: string | null = null;

export const NO_ADAPTER_HELP =
  "no WebGPU adapter was found. On Linux without a GPU, install Mesa's software Vulkan driver " +
  "(Debian/Ubuntu: `sudo apt-get install mesa-vulkan-drivers`) and Deno's WebGPU will use it; " +
  'or use the reference interpreter with mj.setBackend("cpu") (slow).';

/**
 * Mesa's Vulkan drivers print "XDG_RUNTIME_DIR is invalid or not set" (twice) on headless
 * machines although compute never needs a display. Point the variable at the temp dir when it
 * is unset (only then, and only when the environment may be written).
 */
function quietMesaWarning(): void {
  const deno = (globalThis as {
    Deno?: {
      build?: { os?: string };
      env?: { get(k: string): string | undefined; set(k: string, v: string): void };
    };
  }).Deno;
  const env = deno?.build?.os === "linux" ? deno.env : undefined;
  try {
    if (env && !env.get("XDG_RUNTIME_DIR")) env.set("XDG_RUNTIME_DIR", "/tmp");
  } catch {
    // No env permission: the warning stays, nothing else changes.
  }
}

/** Finds the adapter and device once; null when the machine has no adapter. */
export function acquireGpu(): Promise<Gpu | null> {
  gpuPromise ??= (async () => {
    const nav = (globalThis as { navigator?: { gpu?: GPU } }).navigator;
    if (!nav?.gpu) return null;
    quietMesaWarning();
    let adapter: GPUAdapter | null = null;
    try {
      adapter = await nav.gpu.requestAdapter({ powerPreference: "high-performance" });
    } catch {
      adapter = null;
    }
    if (!adapter) return null;
    const requiredLimits: Record<string, number> = {};
    for (const k of REQUESTED_LIMITS) {
      const v = (adapter.limits as unknown as Record<string, number>)[k];
      if (typeof v === "number") requiredLimits[k] = v;
    }
    const features = [...adapter.features] as string[];
    const wanted = features.filter((f) =>
      f === "shader-f16" || f === "timestamp-query"
    ) as GPUFeatureName[];
    const device = await adapter.requestDevice({ requiredLimits, requiredFeatures: wanted });
    device.lost.then((info) => {
      lost = `${info.reason}: ${info.message}`;
    });
    device.addEventListener("uncapturederror", (ev) => {
      const e = (ev as GPUUncapturedErrorEvent).error;
      uncaptured ??= e.message;
    });
    const ai = adapter.info;
    const limits: Record<string, number> = {};
    for (const k of REQUESTED_LIMITS) {
      const v = (device.limits as unknown as Record<string, number>)[k];
      if (typeof v === "number") limits[k] = v;
    }
    const info: DeviceInfo = {
      adapter: {
        vendor: ai.vendor,
        architecture: ai.architecture,
        device: ai.device,
        description: ai.description,
        fallback: !!(ai as { isFallbackAdapter?: boolean }).isFallbackAdapter,
      },
      backendHint: envVar("DENO_WEBGPU_BACKEND") ??
        (features.includes("shader-f16") ? "vulkan" : "gl?"),
      limits,
      features: [...device.features] as string[],
    };
    return { device, info };
  })();
  return gpuPromise;
}

/** Throws if the device was lost or reported an error nobody captured. */
export function checkDeviceHealth(): void {
  if (lost) {
    throw new DeviceError(`the WebGPU device was lost (${lost}); results cannot be trusted`);
  }
  if (uncaptured) {
    const m = uncaptured;
    uncaptured = null;
    throw new DeviceError(`WebGPU reported an error: ${m}`);
  }
}
