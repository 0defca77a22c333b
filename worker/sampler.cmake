# worker/sampler.cmake — the sampler (logits → token), included from worker/CMakeLists.txt.
# Header-only dependencies: common/check.h (tessera_common) and kernels/philox.h (by path from the root, which
# tessera_common's include directory provides; no link to tessera_kernels is needed).
add_library(tessera_worker_sampler STATIC ${CMAKE_CURRENT_LIST_DIR}/sampler.cpp)
target_link_libraries(tessera_worker_sampler PUBLIC tessera_common)
