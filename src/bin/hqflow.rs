//! The `hqflow` binary: everything lives in the library's `cli` module.

fn main() -> std::process::ExitCode {
    hqflow::allocator::tune();
    hqflow::threads::pin();
    hqflow::cli::main()
}
