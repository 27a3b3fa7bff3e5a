//! The web app and the engines in headless Chromium: WebGPU on SwiftShader, the WebAssembly CPU engine, and the app end to end.

mod app_campaign;
mod app_cpu_engine;
mod app_fixture;
mod app_flywheel_round;
mod app_real_model;
mod app_tiny_model;
mod browser_engine;
mod browser_kernels;
