# CMake toolchain file for 64-bit Arm Linux (Raspberry Pi OS 64-bit, JetPack) with Debian's
# cross compiler:  cmake -S c-examples -B build-a64 -DCMAKE_TOOLCHAIN_FILE=c-examples/cmake/aarch64-linux-gnu.cmake
#                        -DCMAKE_PREFIX_PATH=<aarch64 kdruntime prefix>
set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR aarch64)
set(CMAKE_C_COMPILER aarch64-linux-gnu-gcc)
set(CMAKE_CXX_COMPILER aarch64-linux-gnu-g++)
# Libraries and headers come from CMAKE_PREFIX_PATH (kdruntime) and the cross sysroot only.
set(CMAKE_FIND_ROOT_PATH /usr/aarch64-linux-gnu)
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY BOTH)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE BOTH)
set(CMAKE_FIND_ROOT_PATH_MODE_PACKAGE BOTH)
