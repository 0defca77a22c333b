// tests/parallel/gtest_plain_main.cpp — GoogleTest's main for the non-MPI tests of this folder.
#include <gtest/gtest.h>

int main(int argc, char** argv) {
  testing::InitGoogleTest(&argc, argv);
  return RUN_ALL_TESTS();
}
