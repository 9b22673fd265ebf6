/**
 * Registers every compiled backend a Deno process can run — WebGPU and native — with the backend
 * registry (src/backend.ts), so that the automatic choice sees them. The Deno entry points (mod.ts,
 * the training CLI) import it; the browser entry imports only the WebGPU backend.
 */
import "./webgpu.ts";
import "./native/backend.ts";
