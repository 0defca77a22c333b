# GPU kernel tests (included from tests/kernels/CMakeLists.txt when TESSERA_HAVE_CUDA): each CUDA op against the
# CPU op of the same name. ctest label `gpu`; without a device every test skips with "no CUDA device: ...".
# TESSERA_GPU_TEST_QUICK=1 selects the reduced shape set (compute-sanitizer runs).
foreach(name norm elementwise attention sampling)
  add_executable(test_cuda_${name} ${CMAKE_CURRENT_LIST_DIR}/test_cuda_${name}.cpp)
  target_include_directories(test_cuda_${name} PRIVATE ${PROJECT_SOURCE_DIR})
  target_link_libraries(test_cuda_${name} PRIVATE tessera_kernels_cuda tessera_kernels GTest::gtest_main)
  gtest_discover_tests(test_cuda_${name} PROPERTIES LABELS gpu DISCOVERY_TIMEOUT 60)
endforeach()
# The GPU sampler is checked against the CPU sampler (worker/sampler.h), not against a kernels/ op.
target_link_libraries(test_cuda_sampling PRIVATE tessera_worker_sampler)
