static const char __mod_license[] __attribute__((used, section(".modinfo"), aligned(1))) = "license=GPL";
static const char __mod_desc[] __attribute__((used, section(".modinfo"), aligned(1))) = "description=signery test module";
static const char __mod_name[] __attribute__((used, section(".modinfo"), aligned(1))) = "name=signery_test";
int init_module(void) { return 0; }
