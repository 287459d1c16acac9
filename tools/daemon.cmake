# tlsnicd, the device daemon. Included from tools/CMakeLists.txt (or, until that exists,
# from tests/integration).
add_executable(tlsnicd ${CMAKE_CURRENT_LIST_DIR}/tlsnicd.c)
target_link_libraries(tlsnicd PRIVATE tlsnic_ctl)
