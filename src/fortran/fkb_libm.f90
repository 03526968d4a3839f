!! The C maths functions that Fortran lacks but Keras' kernels use (expm1, log1p), so that
!! ELU, SELU and softplus round like TensorFlow's rather than like exp(x)-1.
module fkb_libm
  use iso_c_binding, only: c_float, c_double
  implicit none
  private
  public :: expm1, log1p

  interface expm1
    pure function expm1f_c(x) bind(c, name='expm1f')
      import :: c_float
      real(c_float), value, intent(in) :: x
      real(c_float) :: expm1f_c
    end function expm1f_c
    pure function expm1_c(x) bind(c, name='expm1')
      import :: c_double
      real(c_double), value, intent(in) :: x
      real(c_double) :: expm1_c
    end function expm1_c
  end interface expm1

  interface log1p
    pure function log1pf_c(x) bind(c, name='log1pf')
      import :: c_float
      real(c_float), value, intent(in) :: x
      real(c_float) :: log1pf_c
    end function log1pf_c
    pure function log1p_c(x) bind(c, name='log1p')
      import :: c_double
      real(c_double), value, intent(in) :: x
      real(c_double) :: log1p_c
    end function log1p_c
  end interface log1p

end module fkb_libm
