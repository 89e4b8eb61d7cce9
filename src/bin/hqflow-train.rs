//! The `hqflow-train` binary: everything lives in the library's `train` module.

fn main() -> std::process::ExitCode {
    hqflow::allocator::tune(hqflow::allocator::Workload::Training);
    hqflow::threads::pin();
    hqflow::train::main()
}
