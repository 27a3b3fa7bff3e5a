//! The web app and the engines in headless Chromium: WebGPU on SwiftShader, the WebAssembly CPU engine, and the app end to end.

mod browser_engine;
mod browser_kernels;
mod web_app;
