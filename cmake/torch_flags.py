"""Print what CMake needs to compile against the installed torch, as `key=value` lines.

We read these from torch itself rather than `find_package(Torch)`: torch's CMake config also
hunts for nvrtc, cuDNN and friends in places pip does not put them, and pyfacex needs none of them.
"""
import torch
from torch.utils import cpp_extension

lib_dir = cpp_extension.library_paths()[0]
print("version=" + torch.__version__)
print("cuda=" + (torch.version.cuda or ""))
print("cxx11_abi=" + str(int(torch._C._GLIBCXX_USE_CXX11_ABI)))
print("include_dirs=" + ";".join(cpp_extension.include_paths()))
print("lib_dir=" + lib_dir)
